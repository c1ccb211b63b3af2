"""Find an installed interpreter for a job's ``python_version``: on PATH, in pyenv, uv-managed.

uv's own discovery covers PATH and uv-managed interpreters but stops at pyenv's shims (a shim for a
version that is not selected fails), so pyenv's ``versions/*/bin/python3`` are listed as well.
Nothing is downloaded unless ``[python_exec] python_downloads`` allows it.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from pathlib import Path

from airflow_python_exec.errors import ProvisioningError
from .uv import uv_binary


def _matches(version: str, wanted: str) -> bool:
    return version == wanted or version.startswith(wanted + ".")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


@functools.lru_cache(maxsize=None)
def installed_pythons(python_downloads: str = "never") -> tuple[tuple[str, Path], ...]:
    """Every CPython found, as ``(full version, executable)`` pairs, newest first (cached per process)."""
    found: dict[Path, str] = {}
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": python_downloads, "NO_COLOR": "1"}
    listing = subprocess.run(
        [uv_binary(), "python", "list", "--only-installed", "--output-format", "json"],
        capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=120,
    )
    if listing.returncode == 0:
        for entry in json.loads(listing.stdout or "[]"):
            if entry.get("implementation") == "cpython" and entry.get("path"):
                found[Path(entry["path"])] = entry["version"]
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    for exe in sorted(pyenv_root.glob("versions/*/bin/python3")):
        name = exe.parent.parent.name  # pyenv names a CPython folder by its version
        if re.fullmatch(r"\d+\.\d+\.\d+", name) and os.access(exe, os.X_OK):
            found.setdefault(exe, name)
    pairs = {(v, p) for p, v in found.items() if "shims" not in p.parts}
    return tuple(sorted(pairs, key=lambda vp: (_version_key(vp[0]), str(vp[1])), reverse=True))


def find_python(wanted: str, python_downloads: str = "never") -> tuple[Path, str]:
    """Return ``(executable, full version)`` of the newest installed Python matching ``wanted``.

    ``wanted`` is ``3``, ``3.12`` or ``3.12.4``. With ``python_downloads = automatic`` a missing
    version is installed by uv first.

    :raises ProvisioningError: nothing matches; the message lists the versions found.
    """
    for version, exe in installed_pythons(python_downloads):
        if _matches(version, wanted):
            return exe, version
    if python_downloads == "automatic":
        subprocess.run([uv_binary(), "python", "install", wanted], check=False, stdin=subprocess.DEVNULL,
                       env={**os.environ, "UV_PYTHON_DOWNLOADS": python_downloads})
        installed_pythons.cache_clear()
        for version, exe in installed_pythons(python_downloads):
            if _matches(version, wanted):
                return exe, version
    versions = sorted({v for v, _ in installed_pythons(python_downloads)}, key=_version_key)
    raise ProvisioningError(
        f"python_version {wanted} is not installed on this worker (found: {', '.join(versions) or 'none'}); "
        "install it, pick one of those, or allow [python_exec] python_downloads"
    )
