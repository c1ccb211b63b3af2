"""The environment cache's size on the "Python jobs" page: the cache of the machine that serves it.

The figures are those of ``airflow-python-exec envs list`` (:func:`~airflow_python_exec.environments.
cache_cap.cache_size`: each environment's size recorded when it was built, each bytecode store
entry's recorded bytes), read from ``[python_exec] cache_dir`` on the api-server's own machine. With
workers on other machines (CeleryExecutor, Kubernetes), each worker has its own ``cache_dir`` unless
it is a shared volume, so the page says whose cache it shows (the host name).

The page costs the same whatever the cache holds: the figures are read at most once every
:data:`KEEP_S` seconds, on the page's own threads (the caller runs on them, :mod:`.threads`), and
kept in between for every request. While one thread reads them, another request gets the figures
kept before (when there are any) instead of waiting. Nothing here fails the page: a missing or
unreadable ``cache_dir`` gives figures of ``None`` and the reason, shown as "unknown".
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow_python_exec.environments.bytecode import store_dir
from airflow_python_exec.environments.cache_cap import CacheSize, cache_size, human_bytes
from airflow_python_exec.logs import log
from airflow_python_exec.settings import EngineSettings

#: How long figures read once serve every request, seconds.
KEEP_S = 60.0


@dataclasses.dataclass(frozen=True)
class CacheFigures:
    """The cache's size as read at one moment on this machine.

    :ivar host: this machine's host name (the api-server's, not a worker's).
    :ivar cache_dir: ``[python_exec] cache_dir`` as read here.
    :ivar max_cache_bytes: the cap in bytes, ``None`` when unset.
    :ivar measured_at: when the figures were read, POSIX timestamp, seconds.
    :ivar size: the figures (bytes and counts); ``None`` when they could not be read.
    :ivar error: why they could not be read (one line), else ``None``.
    """

    host: str
    cache_dir: str
    max_cache_bytes: int | None
    measured_at: float
    size: CacheSize | None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON answer's ``cache`` object: counts and bytes (``None`` when unknown), ``host``,
        ``cache_dir``, ``max_cache_bytes``, ``measured_at`` (UTC, ISO 8601) and ``error``."""
        size = self.size
        return {
            "host": self.host,
            "cache_dir": self.cache_dir,
            "environments": size.environments if size else None,
            "environments_bytes": size.environments_bytes if size else None,
            "store_entries": size.store_entries if size else None,
            "store_bytes": size.store_bytes if size else None,
            "total_bytes": size.total if size else None,
            "max_cache_bytes": self.max_cache_bytes,
            "measured_at": datetime.fromtimestamp(self.measured_at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "error": self.error,
        }

    def shown(self) -> dict[str, Any]:
        """:meth:`as_dict` plus each byte count as ``envs list`` writes it (``*_shown``: ``3.4 MiB``)."""
        figures = self.as_dict()
        for name in ("environments_bytes", "store_bytes", "total_bytes", "max_cache_bytes"):
            value = figures[name]
            figures[name.removesuffix("_bytes") + "_shown"] = human_bytes(value) if value is not None else None
        return figures


@dataclasses.dataclass(frozen=True)
class _Kept:
    key: tuple[str, int | None]
    at: float  # time.monotonic(), seconds
    figures: CacheFigures


_kept: _Kept | None = None
_reading = threading.Lock()


def cache_figures(settings: EngineSettings) -> CacheFigures:
    """The figures of ``settings.cache_dir`` on this machine, read at most once every :data:`KEEP_S`
    seconds (another ``cache_dir`` or ``max_cache_bytes`` reads them again at once). Never raises.

    Call it on the page's threads, never on the event loop: a read takes one small file per
    environment and bytecode store entry.
    """
    global _kept
    key = (str(settings.cache_dir), settings.max_cache_bytes)
    kept = _kept
    if kept is not None and kept.key == key and time.monotonic() - kept.at < KEEP_S:
        return kept.figures
    earlier = kept.figures if kept is not None and kept.key == key else None
    if earlier is None:
        _reading.acquire()
    elif not _reading.acquire(blocking=False):
        return earlier  # another request reads them right now
    try:
        kept = _kept  # read by the request this one waited for?
        if kept is not None and kept.key == key and time.monotonic() - kept.at < KEEP_S:
            return kept.figures
        figures = measure(settings.cache_dir, settings.max_cache_bytes)
        _kept = _Kept(key, time.monotonic(), figures)
        return figures
    finally:
        _reading.release()


def measure(cache_dir: Path, max_cache_bytes: int | None) -> CacheFigures:
    """Read the cache's figures now (:func:`~airflow_python_exec.environments.cache_cap.cache_size`,
    as ``envs list``); a missing or unreadable ``cache_dir`` gives ``size=None`` and the reason.
    Never raises."""
    size: CacheSize | None = None
    error: str | None = None
    try:
        _check_readable(cache_dir)
        size = cache_size(cache_dir)
    except OSError as exc:
        error = f"{exc.strerror or exc}: {exc.filename or cache_dir}"
    except Exception as exc:  # noqa: BLE001 - the page shows the jobs whatever the cache's state
        log.warning("cannot read the size of cache_dir %s for the Python jobs page: %s", cache_dir, exc)
        error = f"{type(exc).__name__}: {exc}"
    return CacheFigures(socket.gethostname(), str(cache_dir), max_cache_bytes, time.time(), size, error)


def _check_readable(cache_dir: Path) -> None:
    """Raise ``OSError`` when ``cache_dir``, or its ``envs/`` or bytecode store folder that exists,
    cannot be listed (the registry skips what it cannot read, which would show a size of 0)."""
    if not cache_dir.exists():
        raise FileNotFoundError(2, "cache_dir does not exist on this machine", str(cache_dir))
    for folder in (cache_dir, cache_dir / "envs", store_dir(cache_dir)):
        if folder == cache_dir or folder.exists():
            with os.scandir(folder):
                pass
