"""A run's result and a handler's failure (DESIGN.md, "Results and exit codes").

- :func:`read_result`: the JSON a script (or the bootstrap) wrote to ``PYTHON_EXEC_RESULT_FILE``;
  when that file is empty or missing, the run's last output line, as with ``BashOperator``.
- :func:`read_handler_error`: the bootstrap's error file, as one line for the task's failure message.

In both, every occurrence of a decrypted secret becomes ``***`` (:class:`~airflow_python_exec.redaction.Redactor`).

Both files are written by the job's process, so they are read as hostile input
(:func:`~airflow_python_exec.isolation.job_files.read_job_file`: no symlink, no FIFO, at most
``max_result_bytes``) and parsed with a nesting limit (:mod:`airflow_python_exec.isolation.json_limits`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_python_exec.errors import ResultError
from airflow_python_exec.isolation import json_limits
from airflow_python_exec.isolation.job_files import open_folder, read_job_file
from airflow_python_exec.redaction import Redactor

#: Default of ``[python_exec] max_result_bytes``.
MAX_RESULT_BYTES = 1_048_576
#: Longest failure message taken from an error file, in characters.
MAX_MESSAGE_CHARS = 1000
#: Names the result file in messages.
RESULT_FILE = "the result file PYTHON_EXEC_RESULT_FILE"


@dataclass(frozen=True)
class HandlerError:
    """A handler's failure as the bootstrap described it.

    :ivar type: the exception's type (``module.Class`` unless built in), e.g. ``"ValueError"``.
    :ivar message: its message on one line, secrets replaced, at most :data:`MAX_MESSAGE_CHARS`.
    :ivar kind: ``"exception"`` (the handler raised), ``"result"`` (its value is not JSON),
        ``"refused"`` (it could not be called as asked) or ``"unreadable"`` (the error file itself
        was hostile: a symlink, a FIFO, too large, not JSON; the message says which).
    """

    type: str
    message: str
    kind: str

    def __str__(self) -> str:
        """``Type: message`` for an exception, the message alone otherwise."""
        if self.kind != "exception":
            return self.message
        return f"{self.type}: {self.message}" if self.message else self.type


def read_result(
    result_file: Path | None,
    last_line: str | None = None,
    *,
    max_result_bytes: int = MAX_RESULT_BYTES,
    redact: Redactor | None = None,
    dir_fd: int | None = None,
) -> Any:
    """Return a run's result.

    :param result_file: the run's ``PYTHON_EXEC_RESULT_FILE`` (it may not exist).
    :param last_line: the run's last output line, or ``None`` when it printed nothing.
    :param max_result_bytes: largest result accepted, in bytes of UTF-8.
    :param redact: the run's secrets; each occurrence becomes ``***`` in strings, keys and numbers
        (:meth:`~airflow_python_exec.redaction.Redactor.mask_value`). ``None``: nothing to mask.
    :param dir_fd: the run folder, opened when it was made
        (:attr:`~airflow_python_exec.handlers.run_files.RunFiles.dir_fd`): ``result_file``'s name is
        read inside it, whatever the job did to the folder's path since. Default: the folder of
        ``result_file``, opened now (without following a symlink).
    :returns: the file's JSON value when the file holds anything but whitespace, else ``last_line``.
    :raises ResultError: the file is a symlink, a FIFO or anything but a regular file, larger than
        ``max_result_bytes``, not UTF-8, not valid JSON or nested deeper than
        :data:`~airflow_python_exec.isolation.json_limits.MAX_JSON_DEPTH`, or the last line is larger than
        ``max_result_bytes``; one line, without the content.
    """
    text = _read_limited(result_file, max_result_bytes, dir_fd) if result_file is not None else None
    if text is None or not text.strip():
        if last_line is not None and len(last_line.encode("utf-8", "replace")) > max_result_bytes:
            raise ResultError(_too_big("the last output line", max_result_bytes))
        return redact(last_line) if redact is not None and last_line is not None else last_line
    try:
        value = json_limits.loads(text, "the result in PYTHON_EXEC_RESULT_FILE")
    except json_limits.JSONDepthError as exc:
        raise ResultError(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise ResultError(
            f"the result in PYTHON_EXEC_RESULT_FILE is not valid JSON ({exc.msg} at line {exc.lineno} column "
            f"{exc.colno}); write it with json.dump"
        ) from None
    return redact.mask_value(value) if redact is not None else value


def read_handler_error(
    error_file: Path | None,
    redact: Redactor | None = None,
    *,
    max_bytes: int = MAX_RESULT_BYTES,
    dir_fd: int | None = None,
) -> HandlerError | None:
    """Read the bootstrap's ``PYTHON_EXEC_ERROR_FILE``.

    :param redact: the run's secrets, replaced by ``***`` wherever they occur in the message (with
        their surrounding whitespace stripped too). ``None``: nothing to mask.
    :param max_bytes: the most bytes read (``[python_exec] max_result_bytes``).
    :param dir_fd: the run folder, as for :func:`read_result`.
    :returns: the failure on one line, or ``None`` when the file is missing or empty (the handler
        succeeded, or its process died before it could say why). A file the job's code made hostile
        (a symlink, a FIFO, a device, larger than ``max_bytes``, not JSON) gives a failure of kind
        ``"unreadable"`` that says so: it is never followed, waited for or read whole.
    """
    if error_file is None:
        return None
    try:
        raw = _read_job_file(error_file, max_bytes, dir_fd, "the error file", "leave it to the bootstrap")
        if raw is None or not raw.strip():
            return None
        data = json_limits.loads(raw, "the error file")
    except ResultError as exc:
        return HandlerError("ResultError", str(exc), "unreadable")
    except ValueError:  # not UTF-8, not JSON, too deep
        return HandlerError("ResultError", "the error file is not the bootstrap's JSON", "unreadable")
    if not isinstance(data, dict):
        return HandlerError("ResultError", "the error file is not the bootstrap's JSON", "unreadable")
    redact = redact or Redactor(())
    message = " ".join(line.strip() for line in str(data.get("message", "")).splitlines() if line.strip())
    message = redact(message)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "…"
    return HandlerError(redact(str(data.get("type", "Exception"))), message, str(data.get("kind", "exception")))


def _read_job_file(path: Path, limit: int, dir_fd: int | None, what: str, fix: str) -> bytes | None:
    """``path``'s bytes through :func:`read_job_file`: inside ``dir_fd``, else inside its folder opened now."""
    if dir_fd is not None:
        return read_job_file(path.name, dir_fd=dir_fd, limit=limit, what=what, fix=fix)
    try:
        folder = open_folder(path.parent)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ResultError(f"{what}'s folder {path.parent} cannot be opened ({exc.strerror or exc}); {fix}") from None
    try:
        return read_job_file(path.name, dir_fd=folder, limit=limit, what=what, fix=fix)
    finally:
        os.close(folder)


def _read_limited(path: Path, limit: int, dir_fd: int | None = None) -> str | None:
    """The file's text, ``None`` when it does not exist; refused beyond ``limit`` bytes or when it
    is not a regular file."""
    data = _read_job_file(path, limit, dir_fd, RESULT_FILE, "write the result into it")
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ResultError("the result in PYTHON_EXEC_RESULT_FILE is not UTF-8 text; write JSON") from None


def _too_big(what: str, limit: int) -> str:
    return f"{what} is larger than {limit} bytes ([python_exec] max_result_bytes); return less, or raise the limit"
