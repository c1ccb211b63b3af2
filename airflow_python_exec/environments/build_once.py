"""A cache entry built once under a ``filelock`` lock and trusted only once its marker exists.

Shared by the environment cache (``envs/<key>/.provisioned``) and the source cache
(``sources/<id>.provisioned``). The pattern: look for the marker (a cheap stat); if absent, take
the entry's lock, or see the marker appear while another process holds it; build; write the marker
last with an atomic rename. A process killed at any instant leaves either a marked, complete entry or
an unmarked one that the next builder removes.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from airflow_python_exec.errors import ProvisioningError


def write_marker(marker: Path, content: dict[str, Any]) -> None:
    """Write ``content`` as JSON to ``marker`` atomically: a temporary file, then ``os.replace``.

    Readers see either no marker or a complete one, never a half-written file.
    """
    tmp = marker.with_name(f"{marker.name}.tmp")
    tmp.write_text(json.dumps(content, indent=2))
    os.replace(tmp, marker)


def acquire_or_see_marker(
    lock: Any, marker: Path, *, timeout_s: float, what: str, stopped: Callable[[], bool] = lambda: False
) -> bool:
    """Take the entry's ``filelock`` lock, or see its marker appear while another process holds it.

    Waiters look for the marker themselves instead of queueing for the lock one by one, so all of
    them go on within a few milliseconds of the build finishing.

    :param lock: a ``filelock.FileLock`` (not yet held).
    :param marker: the file whose existence means "complete".
    :param timeout_s: seconds to wait (``[python_exec] lock_timeout``).
    :param what: the entry in messages, e.g. ``"environment 1a2b..."``.
    :param stopped: polled while waiting; ``True`` ends the wait with an error.
    :returns: ``True`` when the lock is held (the caller builds), ``False`` on a marker.
    :raises ProvisioningError: stopped, or neither within ``timeout_s``.
    """
    import filelock  # ~20 ms to import: only on the cold path, never on a cache hit

    deadline = time.monotonic() + timeout_s
    next_try = 0.0
    while True:
        # The marker is a cheap stat, looked at every 5 ms; the lock costs more and only matters
        # when a build fails, so it is tried every 50 ms.
        if time.monotonic() >= next_try:
            try:
                lock.acquire(blocking=False)
                return True
            except filelock.Timeout:
                next_try = time.monotonic() + 0.05
        if marker.is_file():
            return False
        if stopped():
            raise ProvisioningError(f"stopped while waiting for {what} to be provisioned")
        if time.monotonic() >= deadline:
            raise ProvisioningError(
                f"{what} is being provisioned by another process and its lock was not released "
                f"within {timeout_s:g} s; retry later or raise [python_exec] lock_timeout"
            )
        time.sleep(0.005)


@contextlib.contextmanager
def disk_errors_as_provisioning(cache: str = "environment cache") -> Iterator[None]:
    """An unusable cache folder (missing rights, full disk, a file in the way) fails provisioning
    with one line, not a traceback. Errors raised by the job's own run pass through untouched.

    :param cache: the cache in the message, e.g. ``"source cache"``.
    """
    try:
        yield
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise ProvisioningError(
            f"the {cache} cannot be used: {exc.strerror or exc}{where}; check [python_exec] cache_dir"
        ) from None


def ms(started: float) -> str:
    """Milliseconds since ``started`` (a ``time.monotonic()`` value), formatted for a log line."""
    return f"{(time.monotonic() - started) * 1000:.1f} ms"
