"""The outcome of an exit code: ``runtimeConfig.exitCodes``, the platform's "exit code mapping"
(DESIGN.md, "Results and exit codes"), plus the operator's ``skip_on_exit_code``.

Pure parsing, no I/O: the models validate the mapping when a job is loaded, the operator applies it
to a run's exit status.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from typing import Any

from airflow_python_exec.errors import JobConfigError


class Outcome(str, enum.Enum):
    """What an exit status means for the task."""

    SUCCESS = "success"
    SKIPPED = "skipped"
    FAILED = "failed"


def parse_exit_codes(mapping: Mapping[Any, Any] | None) -> dict[int, Outcome]:
    """Validate ``runtimeConfig.exitCodes``, e.g. ``{"0": "success", "3": "skipped", "5": "failed"}``.

    :param mapping: keys are exit codes 0-255 written as integer strings (``"3"``; ``int`` keys too,
        from Python); values are ``success``, ``skipped`` or ``failed`` (any case).
    :returns: exit code -> :class:`Outcome`.
    :raises JobConfigError: one line naming the bad key or value and what is allowed.
    """
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        raise JobConfigError(
            f'runtimeConfig.exitCodes must be an object like {{"3": "skipped"}}, not {type(mapping).__name__}'
        )
    parsed: dict[int, Outcome] = {}
    for key, value in mapping.items():
        code = _exit_code(key, f"runtimeConfig.exitCodes key {key!r}")
        try:
            parsed[code] = Outcome(value.strip().lower()) if isinstance(value, str) else Outcome(value)
        except ValueError:
            raise JobConfigError(
                f"runtimeConfig.exitCodes[{key!r}] = {value!r} is not an outcome; use success, skipped or failed"
            ) from None
    return parsed


def exit_outcome(
    exit_code: int, exit_codes: Mapping[Any, Any] | None = None, skip_codes: int | Collection[int] | None = None
) -> Outcome:
    """What an exit status means: the platform's exit code mapping, plus the operator's skip codes.

    :param exit_code: the run's exit status (``128 + N`` for a signal, as the service reports it).
    :param exit_codes: ``runtimeConfig.exitCodes`` (validated here with :func:`parse_exit_codes`).
    :param skip_codes: the operator's ``skip_on_exit_code`` (one code or several); they add to the
        mapping and, being set on the task itself, win over it for the same code.
    :returns: a code in ``skip_codes`` is skipped; else a mapped code is what the mapping says;
        else ``0`` succeeds and any other code fails.
    :raises JobConfigError: an invalid mapping or skip code.
    """
    mapping = parse_exit_codes(exit_codes)
    skips = {skip_codes} if isinstance(skip_codes, int) else set(skip_codes or ())
    for code in skips:
        _exit_code(code, f"skip_on_exit_code {code!r}")
    if exit_code in skips:
        return Outcome.SKIPPED
    if exit_code in mapping:
        return mapping[exit_code]
    return Outcome.SUCCESS if exit_code == 0 else Outcome.FAILED


def _exit_code(value: Any, what: str) -> int:
    """``value`` as an exit code 0-255: an ``int`` or its canonical string (no sign, no leading zero)."""
    if isinstance(value, bool):
        code = None
    elif isinstance(value, int):
        code = value
    elif isinstance(value, str) and value.isdigit() and value.isascii() and str(int(value)) == value:
        code = int(value)
    else:
        code = None
    if code is None or not 0 <= code <= 255:
        raise JobConfigError(f'{what} is not an exit code; use an integer from 0 to 255, written like "3"')
    return code
