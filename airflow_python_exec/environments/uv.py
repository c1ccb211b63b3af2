"""uv, run as a subprocess: the ``uv`` package's own binary, never a download.

Each call runs in its own process group (so a cancelled task stops it), its output streamed line by
line to the caller prefixed with ``[uv]``. uv's "preview feature" warning for PEP 751 locks is
silenced with ``UV_PREVIEW_FEATURES=pylock``, the option uv itself names for that.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from airflow_python_exec.errors import ProvisioningError
from airflow_python_exec.isolation.base_env import base_environment
from airflow_python_exec.isolation.process import JobProcess
from airflow_python_exec.models.resources import Resources
from airflow_python_exec.settings import EngineSettings

from .bounded import build_limits

#: uv's messages that say an offline attempt lacked something in the cache (retry online then).
_CACHE_MISS = re.compile(r"network (connectivity )?(is|was) disabled|not found in the cache|--offline", re.IGNORECASE)
_ERROR = re.compile(r"^\s*(error|caused by|cause)\b", re.IGNORECASE)


def uv_binary() -> str:
    """Path of the uv executable shipped by the ``uv`` package."""
    from uv import find_uv_bin

    return find_uv_bin()


class Uv:
    """Run uv commands for one provisioning.

    :param settings: ``python_downloads`` becomes ``UV_PYTHON_DOWNLOADS``.
    :param on_line: receives each output line, already prefixed with ``[uv]``.
    """

    def __init__(self, settings: EngineSettings, on_line: Callable[[str], None]) -> None:
        self.on_line = on_line
        self.stopped = False
        self._process: JobProcess | None = None
        #: The job's limits: every uv call (resolve, install, a sandboxed build) runs under them.
        self.resources: Resources | None = None
        env = base_environment(os.environ, inherit=True)
        env.pop("PYTHONUNBUFFERED", None)
        env.update(
            UV_PYTHON_DOWNLOADS=settings.python_downloads,
            UV_PREVIEW_FEATURES="pylock",
            UV_NO_PROGRESS="1",
            NO_COLOR="1",
        )
        self.env = env

    def run(
        self,
        what: str,
        args: Sequence[str],
        *,
        offline_first: bool = False,
        explain: Callable[[list[str]], str | None] | None = None,
        launcher: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        on_download: Callable[[], None] | None = None,
    ) -> list[str]:
        """Run ``uv <args>``; return its output lines.

        :param what: the step, for the error message (e.g. ``"install pylock.toml"``).
        :param offline_first: try ``--offline`` first, so nothing is fetched when uv's cache has
            everything; on a cache miss, run again with the network.
        :param explain: given uv's output lines after a failure, a one-line explanation that
            replaces uv's error lines in the message, or ``None`` to keep them.
        :param launcher: a command that starts uv as its descendant (the sandbox's ``bwrap ... --``).
        :param env: uv's whole environment instead of the worker's (a sandboxed build's minimal one).
        :param cwd: uv's working directory (default: this process's).
        :param on_download: called when the offline attempt lacked something, before uv downloads it.
        :raises ProvisioningError: uv failed (its ``error:`` lines in the message) or was stopped.
        """
        where = (tuple(launcher), env, cwd)
        if offline_first:
            code, lines = self._call([*args, "--offline"], echo=False, where=where)
            if code == 0:
                for line in lines:
                    self.on_line(f"[uv] {line}")
                return lines
            if not any(_CACHE_MISS.search(line) for line in lines) or self.stopped:
                self._fail(what, code, lines, echoed=False, explain=explain)
            if on_download is not None:
                on_download()
        code, lines = self._call(list(args), echo=True, where=where)
        if code != 0:
            self._fail(what, code, lines, echoed=True, explain=explain)
        return lines

    def stop(self) -> None:
        """Stop the running uv command (its whole process group). Safe from any thread."""
        self.stopped = True
        process = self._process
        if process is not None:
            process.stop()

    def _call(
        self, args: list[str], echo: bool, where: tuple[tuple[str, ...], Mapping[str, str] | None, Path | None]
    ) -> tuple[int, list[str]]:
        if self.stopped:
            raise ProvisioningError("provisioning was stopped before it finished")
        launcher, env, cwd = where
        limits = build_limits(self.resources)
        try:
            process = JobProcess(
                [uv_binary(), *args],
                dict(self.env if env is None else env),
                cwd or Path.cwd(),
                grace_s=5.0,
                launcher=launcher,
                limits=limits,
            )
        except BaseException:
            if limits is not None:
                limits.close()
            raise
        self._process = process
        lines: list[str] = []
        code = 1
        try:
            for line in process.stream():
                if _noise(line):
                    continue
                lines.append(line)
                if echo:
                    self.on_line(f"[uv] {line}")
            code = process.wait()
        except BaseException:
            process.kill()
            raise
        finally:
            self._process = None
            process.close()
            if limits is not None:
                reason = limits.ended_by(code, "uv", process.pid)
                limits.close()
                lines += [f"error: {reason}"] if reason else []
        return code, lines

    def _fail(
        self,
        what: str,
        code: int,
        lines: list[str],
        echoed: bool,
        explain: Callable[[list[str]], str | None] | None = None,
    ) -> None:
        if not echoed:
            for line in lines:
                self.on_line(f"[uv] {line}")
        if self.stopped:
            raise ProvisioningError(f"{what} was stopped before it finished")
        if explain is not None and (message := explain(lines)):
            raise ProvisioningError(f"{what} failed: {message}")
        errors = [_ERROR.sub("", line).lstrip(":").strip() for line in lines if _ERROR.match(line)]
        detail = "; ".join(e for e in errors or [line.strip() for line in lines[-2:]] if e) or f"uv exited with {code}"
        raise ProvisioningError(f"{what} failed: {detail}")


def _noise(line: str) -> bool:
    """uv lines that tell a task-log reader nothing: the pylock preview warning, and the hint to
    activate the environment by hand (the provider activates it)."""
    lowered = line.lower()
    return ("preview" in lowered and "warning" in lowered) or lowered.lstrip().startswith("activate with:")
