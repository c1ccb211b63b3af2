"""Airflow names whose home depends on the installed versions, for the Airflow-side modules.

``mask_secret`` is in ``airflow.providers.common.compat.sdk`` only from common-compat 1.22, which
needs Python 3.11; on Python 3.10 the newest common-compat is 1.20, so the provider would not import
there. The Task SDK of every Airflow we support (3.1+) has it in ``airflow.sdk.log``.

Import it from here (``from airflow_python_exec.compat import mask_secret``), never directly from
common-compat. Like ``hooks/``, this module needs Airflow; the core never imports it.
"""

from __future__ import annotations

try:
    from airflow.providers.common.compat.sdk import mask_secret
except ImportError:  # common-compat < 1.22 (Python 3.10)
    from airflow.sdk.log import mask_secret

__all__ = ["mask_secret"]
