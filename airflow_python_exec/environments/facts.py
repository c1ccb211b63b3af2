"""What a run's environment is, for its start line and metadata: Python version, key, cache hit or
build, packages (DESIGN.md, "Resource limits": the run's first line).

An environment's files are read as job-writable files (an unsandboxed job can write a cached
environment): never a FIFO, a symlink, or more than 64 KiB (pyvenv.cfg) / 1 MiB (the marker).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from airflow_python_exec.errors import ResultError
from airflow_python_exec.isolation.job_files import open_folder, read_job_file

from .cache_files import MARKER


def _read(venv: Path, name: str, limit: int) -> str | None:
    try:
        folder = open_folder(venv)
    except OSError:
        return None
    try:
        raw = read_job_file(name, dir_fd=folder, limit=limit, what=name, fix="rebuild it")
        return raw.decode("utf-8", "replace") if raw is not None else None
    except ResultError:
        return None
    finally:
        os.close(folder)


def venv_version(venv: Path) -> str | None:
    """The Python version of a virtual environment, from its ``pyvenv.cfg`` (``version_info``)."""
    for line in (_read(venv, "pyvenv.cfg", 65536) or "").splitlines():
        key, _, value = line.partition("=")
        if key.strip() in ("version_info", "version"):
            return value.strip()
    return None


def environment_facts(venv: Path, built: bool) -> dict[str, Any]:
    """``key`` (the folder's name), ``cache`` (``hit``, ``built`` or ``ephemeral``) and ``packages``
    (how many the marker lists as installed; ``None`` when unreadable)."""
    try:
        installed = json.loads(_read(venv, MARKER, 1 << 20) or "null").get("installed")
    except (ValueError, AttributeError):
        installed = None
    cache = "ephemeral" if venv.parent.name == "ephemeral" else "built" if built else "hit"
    return {"key": venv.name, "cache": cache, "packages": len(installed) if isinstance(installed, list) else None}
