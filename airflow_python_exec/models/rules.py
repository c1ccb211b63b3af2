"""The rules every part of a job is held to: confined ``.py`` files, ``job.json`` read as a regular
file of bounded JSON, near-miss keys, and one-line messages from pydantic's errors (DESIGN.md, "The
job folder")."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import (
    BaseModel,
    ValidationError,
)

from airflow_python_exec.errors import JobConfigError, ScriptNotAllowedError
from airflow_python_exec.isolation import json_limits
from airflow_python_exec.isolation.job_files import read_capped

JOB_FILE = "job.json"
DEFAULT_SCRIPT = "app.py"
#: A handler job's main file on the data platform, used when there is no ``app.py``.
PLATFORM_SCRIPT = "main.py"
#: Python refuses to turn longer digit strings into ints (CVE-2020-10735); so do we, with one line.
MAX_INT_DIGITS = 4300
#: DESIGN.md's near miss: an edit distance of 2 or less. Known keys this short or shorter get 1, so
#: common short platform keys (``job``, ``jobs``: 2 edits from ``jobId``) still only warn.
NEAR_MISS_EDITS = 2
SHORT_KEY_CHARS = 5
#: Longest path or command a job may name, in characters (Linux's PATH_MAX): a longer one could not
#: be opened or executed anyway, and is refused in one short line before anything starts.
MAX_NAME_CHARS = 4096


def allowed_script(folder: Path, name: str, what: str) -> Path:
    """Resolve ``name`` to a regular ``.py`` file confined to ``folder`` (the platform's rule that
    only uploaded ``.py`` files are executed).

    :returns: the resolved absolute path.
    :raises ScriptNotAllowedError: when ``name`` breaks the rule; the message says which way.
    """
    check_length(name, what)
    posix = PurePosixPath(name.replace("\\", "/"))
    if not name.strip():
        raise ScriptNotAllowedError(f"{what} is empty; name the job's .py script, e.g. app.py")
    if "\x00" in name:
        raise ScriptNotAllowedError(f"{what} {shorten(name)} contains a NUL byte; remove it")
    if posix.is_absolute():
        raise ScriptNotAllowedError(
            f"{what} {shorten(name)} is an absolute path; give a path relative to the job folder {folder}"
        )
    if ".." in posix.parts:
        raise ScriptNotAllowedError(f"{what} {shorten(name)} contains '..'; it must stay inside the job folder")
    if posix.suffix != ".py":
        raise ScriptNotAllowedError(f"{what} {shorten(name)} is not a .py file; only .py scripts are executed")
    folder = folder.resolve()  # resolved against resolved: a folder reached through a link is still inside
    candidate = folder / posix
    resolved = candidate.resolve()
    if not resolved.is_relative_to(folder):
        raise ScriptNotAllowedError(
            f"{what} {shorten(name)} is a symlink to {resolved}, outside the job folder; copy the script into it"
        )
    try:
        mode = os.stat(resolved).st_mode  # one stat for "exists" and "regular file" (run on every start)
    except (FileNotFoundError, NotADirectoryError):
        raise ScriptNotAllowedError(
            f"{what} {shorten(name)} does not exist in {folder}; upload it or fix the name"
        ) from None
    except OSError:
        mode = 0
    if not stat.S_ISREG(mode) or resolved.suffix != ".py":
        raise ScriptNotAllowedError(f"{what} {shorten(name)} is not a regular .py file; point it at the script")
    return resolved


def shorten(value: str, limit: int = 200) -> str:
    """``repr(value)`` cut to about ``limit`` characters: a hostile name (huge, multi-line) quoted in a
    one-line message stays one short line."""
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}... ({len(value)} characters)"


def check_length(value: str, what: str, limit: int = MAX_NAME_CHARS) -> None:
    """Refuse a path or command longer than ``limit`` characters (one line, the value cut short).

    :raises JobConfigError: naming ``what``, the length and the limit.
    """
    if len(value) > limit:
        raise JobConfigError(f"{what} {shorten(value)} is longer than {limit} characters; shorten it")


def check_name(name: str) -> None:
    """The rules of :func:`allowed_script` that need no file: relative, no ``..``, a ``.py`` name."""
    posix = PurePosixPath(name.replace("\\", "/"))
    if not name.strip() or "\x00" in name or posix.is_absolute() or ".." in posix.parts or posix.suffix != ".py":
        raise ScriptNotAllowedError(
            f"packageName {shorten(name)} must be a relative .py path without '..', e.g. app.py"
        )


def declares_script_metadata(script: Path) -> bool:
    """Cheap test for PEP 723 inline metadata (``# /// script``) in a script, without parsing it."""
    try:
        with open(script, "rb") as f:
            return b"# /// script" in f.read()
    except OSError:
        return False


def one_line(exc: ValidationError) -> str:
    """Summarise a pydantic ``ValidationError`` as one line: ``field.path: message``."""
    parts = []
    for err in exc.errors():
        field = str(err["loc"][-1]) if err["loc"] else ""
        loc = ".".join(str(p) for p in err["loc"] if p != "folder")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {field!r}; remove it or fix its spelling"
        elif err["type"] == "missing":
            msg = "is required"
        parts.append(msg if not loc or msg.startswith(field) else f"{loc}: {msg}")
    return "; ".join(parts)


def edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance of ``a`` and ``b``, ignoring case: insertions, deletions,
    substitutions and swaps of two neighbouring letters each count 1."""
    a, b = a.lower(), b.lower()
    previous, current = None, list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        before, previous, current = previous, current, [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] != b[j - 1]))
            if before is not None and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], before[j - 2] + 1)
    return current[-1]


def near_miss(key: str, known: Iterable[str]) -> str | None:
    """The known key that ``key`` is a near miss of, or ``None`` (DESIGN.md, "The job folder").

    A near miss has the same letters in another case, or is at most :data:`NEAR_MISS_EDITS` edits
    away (1 for known keys of :data:`SHORT_KEY_CHARS` characters or fewer); the closest one wins.
    """
    best: tuple[int, str] | None = None
    for candidate in known:
        allowed = 1 if len(candidate) <= SHORT_KEY_CHARS else NEAR_MISS_EDITS
        if abs(len(key) - len(candidate)) > allowed:
            continue  # cheap: too long or too short to be within reach
        distance = edit_distance(key, candidate)
        if distance <= allowed and (best is None or distance < best[0]):
            best = (distance, candidate)
    return best[1] if best else None


def json_keys(model: type[BaseModel]) -> list[str]:
    """The keys a platform writes for ``model``'s fields (their aliases), ``folder`` excepted."""
    return [info.alias or name for name, info in model.model_fields.items() if name != "folder"]


def expand_user(path: str | Path) -> Path:
    """``path`` with ``~`` expanded; :raises JobConfigError: ``~user`` of an unknown user."""
    try:
        return Path(path).expanduser()
    except RuntimeError:  # ~user for a user that does not exist
        raise JobConfigError(
            f"job path {str(path)!r} starts with an unknown user's home (~user); give an existing path"
        ) from None


def read_json(path: Path) -> Any:
    """Parse a ``job.json`` that must be a regular file; every failure is one ``JobConfigError`` line."""
    text = _read_regular_file(path)
    try:
        return json_limits.loads(text, str(path), parse_int=lambda digits: _json_int(path, digits))
    except json_limits.JSONDepthError as exc:
        raise JobConfigError(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise JobConfigError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); fix the syntax"
        ) from None


def _json_int(path: Path, digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise JobConfigError(
            f"{path} holds a number with {len(digits.lstrip('-'))} digits (more than {MAX_INT_DIGITS}); "
            "write it as a JSON string"
        )
    return int(digits)


def _read_regular_file(path: Path) -> str:
    """Read ``path`` as UTF-8, refusing anything but a regular file without blocking on it."""
    try:
        return read_capped(path, JOB_FILE).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JobConfigError(f"{path} cannot be read ({exc}); check the file") from None
