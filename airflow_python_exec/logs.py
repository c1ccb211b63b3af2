"""The provider's two loggers (DESIGN.md "Logs").

Lines the provider writes itself come from the logger ``airflow_python_exec`` and start with
``[python_exec]`` (uv's own lines with ``[uv]``); the script's output comes from
``airflow_python_exec.job``. In Airflow's task log the logger name is the line's source, so the UI's
"Sources" filter separates the job's output from the provider's account of it.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

PREFIX = "[python_exec]"
#: The name of the logger of the script's output (in a task, written through structlog by the hook).
JOB_LOGGER = "airflow_python_exec.job"

#: The provider's own lines, already prefixed (use :data:`log` to get the prefix added).
provider_logger = logging.getLogger("airflow_python_exec")
#: The script's output, one record per line.
job_logger = logging.getLogger(JOB_LOGGER)


class _Prefixed(logging.LoggerAdapter):
    """A logger adapter putting ``[python_exec]`` in front of every message."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        return f"{PREFIX} {msg}", kwargs


#: ``log.info("...")`` writes ``[python_exec] ...`` through :data:`provider_logger`.
log = _Prefixed(provider_logger, {})


def provider_line(line: str) -> None:
    """Write an already prefixed provider line (``[python_exec] ...``, ``[uv] ...``) at INFO."""
    provider_logger.info("%s", line)


def job_line(line: str) -> None:
    """Write one line of the script's output at INFO."""
    job_logger.info("%s", line)
