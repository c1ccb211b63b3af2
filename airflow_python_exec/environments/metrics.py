"""Airflow metrics of the environment cache (statsd / OpenTelemetry, as Airflow's metrics are set up).

Sent through Airflow's ``Stats`` (``airflow.sdk.observability.stats``, else the older
``airflow.stats``), and only in a process that has already imported Airflow (a task, a worker): the
command line and the Python API outside Airflow never import it for a metric. With metrics off in
Airflow's configuration, ``Stats`` is a no-op logger and these calls cost next to nothing.

Names (documented in docs/deployment.md, "Metrics"; each prefixed by Airflow's ``[metrics]
statsd_prefix``, ``airflow.`` by default):

- ``python_exec.environment_cache.hit``: counter, a run found its cached environment ready (also
  after waiting for another process that built it);
- ``python_exec.environment_cache.miss``: counter, a run had to provision its cached environment;
- ``python_exec.environment.provision_duration``: timer (milliseconds), the time a provisioning
  took, cached or ephemeral, from ``uv venv`` to the marker.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

CACHE_HIT = "python_exec.environment_cache.hit"
CACHE_MISS = "python_exec.environment_cache.miss"
PROVISION_DURATION = "python_exec.environment.provision_duration"


def _stats() -> Any | None:
    """Airflow's ``Stats``, or ``None`` outside Airflow (not imported in this process) or when it
    cannot be had."""
    if "airflow" not in sys.modules:
        return None
    try:
        from airflow.sdk.observability.stats import Stats
    except ImportError:  # Airflow before the SDK's observability module
        try:
            from airflow.stats import Stats
        except ImportError:
            return None
    return Stats


def cache_hit() -> None:
    """Count a cache hit (:data:`CACHE_HIT`)."""
    stats = _stats()
    if stats is not None:
        stats.incr(CACHE_HIT)


def cache_miss() -> None:
    """Count a cache miss (:data:`CACHE_MISS`)."""
    stats = _stats()
    if stats is not None:
        stats.incr(CACHE_MISS)


def provisioned(seconds: float) -> None:
    """Record how long a provisioning took (:data:`PROVISION_DURATION`, sent in milliseconds).

    :param seconds: the provisioning's duration, in seconds.
    """
    stats = _stats()
    if stats is not None:
        stats.timing(PROVISION_DURATION, timedelta(seconds=seconds))
