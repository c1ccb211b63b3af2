"""What the "Python jobs" page may show of a string taken from a job: every URL's user info hidden.

One rule for every string the page renders from a job (its fields, ``pythonEnv``, requirement
lines, the one-line error of a job that breaks a rule, the tasks that use it): the user info of
every URL is hidden, by the same rule the task log's messages use
(:func:`airflow_python_exec.redaction.hide_url_credentials`).
"""

from __future__ import annotations

from typing import Any

from airflow_python_exec.redaction import hide_url_credentials


def shown(value: Any) -> Any:
    """:func:`~airflow_python_exec.redaction.hide_url_credentials` applied to every string of a
    JSON-like value (dict keys included).

    :returns: a new value of the same shape; numbers, booleans and ``None`` unchanged.
    """
    if isinstance(value, str):
        return hide_url_credentials(value)
    if isinstance(value, dict):
        return {shown(key): shown(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [shown(item) for item in value]
    return value
