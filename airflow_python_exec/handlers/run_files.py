"""One run's handler-job inputs and private files, as the service prepares them.

- :func:`resolve_job_source`: a function job's source as a local folder (the job folder, a folder
  in it, a cached zip or git checkout, or inline code saved under ``<cache_dir>/sources/``), and its
  main file (``packageName`` inside that folder).
- :class:`RunFiles`: a private folder (``mkdtemp``, mode 0700) per run, removed when the run ends.
  Every run gets ``PYTHON_EXEC_RESULT_FILE`` in it; a handler run also gets its parameters, its
  context, an error file and a copy of the bootstrap there (so the bootstrap runs from a folder the
  job can always read, and never from this package's own folder). The job can write this folder,
  so the worker holds it open from its creation (:attr:`RunFiles.dir_fd`) and reads and writes
  inside it through that descriptor only: a job that renames the folder, or puts a symlink in its
  place, changes nothing the worker reads (see :mod:`airflow_python_exec.isolation.job_files`).

Nothing here imports Airflow; :mod:`airflow_python_exec.handlers.sources` is imported only for a job whose
source is not its own folder.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_python_exec.errors import ScriptNotAllowedError
from airflow_python_exec.handlers import (
    BOOTSTRAP,
    CONTEXT_FILE_ENV,
    ERROR_FILE_ENV,
    HANDLER_ENV,
    MAIN_FILE_ENV,
    PARAMS_FILE_ENV,
    RESULT_FILE_ENV,
    SOURCE_ROOT_ENV,
)
from airflow_python_exec.isolation.job_files import open_folder
from airflow_python_exec.models import PythonJob, allowed_script
from airflow_python_exec.settings import EngineSettings


@dataclass(frozen=True)
class JobSource:
    """Where a function job's code is on this machine.

    :ivar root: the source root, put first on ``sys.path``.
    :ivar main_file: ``packageName`` inside the root, or ``None`` when the root has no such file
        (a ``module:function`` handler needs none).
    """

    root: Path
    main_file: Path | None


def resolve_job_source(job: PythonJob, settings: EngineSettings, on_line: Callable[[str], None]) -> JobSource | None:
    """Resolve a function job's source; ``None`` for a script job.

    :param on_line: receives the source cache's ``[python_exec]`` lines (fetches, cache hits, commits).
    :raises JobConfigError: a bad source, or a bare handler whose main file is missing or not allowed.
    :raises ProvisioningError: fetching the source failed.
    """
    function = job.function
    if function is None:
        return None
    code = function.inline_code
    if code is None and function.source is None:
        root = job.folder
    else:
        from airflow_python_exec.handlers.sources import SourceResolver
        from airflow_python_exec.models.reach import code_reach

        resolver = SourceResolver(
            settings.cache_dir,
            max_source_bytes=settings.max_source_bytes,
            lock_timeout=settings.lock_timeout,
            on_line=on_line,
            reach=code_reach(settings, job.folder),
        )
        if code is not None:
            resolved = resolver.resolve_code(code, job.main_file_name)
        else:
            assert function.source is not None  # neither code nor source: the job folder, above
            resolved = resolver.resolve(function.source, job.folder)
        root = resolved.root
    try:
        main_file: Path | None = allowed_script(root, job.main_file_in(root), "packageName")
    except ScriptNotAllowedError:
        if function.bare:
            raise
        main_file = None
    return JobSource(root, main_file)


class RunFiles:
    """The private files of one run; use as a context manager (the folder is removed on leaving).

    :ivar folder: the run folder's path (what the job is told).
    :ivar dir_fd: a descriptor of that folder, opened when it was made: read the job's files with
        it (``dir_fd=`` of :func:`~airflow_python_exec.handlers.results.read_result`).
    """

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="python_exec_run_"))
        self.dir_fd = open_folder(self.folder)
        self.result_file = self.folder / "result.json"
        self.error_file = self.folder / "error.json"
        self.bootstrap = self.folder / BOOTSTRAP.name

    def __enter__(self) -> RunFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        """Remove the folder, wherever the job moved it, and a symlink the job left at its path."""
        try:
            where = os.readlink(f"/proc/self/fd/{self.dir_fd}")  # its path now (Linux)
        except OSError:
            where = str(self.folder)
        os.close(self.dir_fd)
        try:
            if stat.S_ISLNK(os.lstat(self.folder).st_mode):
                os.unlink(self.folder)  # the link only, never its target
        except OSError:
            pass
        for path in {where, str(self.folder)}:
            if os.path.isabs(path):  # "/proc/.../fd" of a removed folder reads "... (deleted)"
                shutil.rmtree(path, ignore_errors=True)  # refuses a symlink: never follows one

    def write(self, name: str, text: str) -> Path:
        """Write a worker file (``name`` inside the folder, created: never an existing one) as UTF-8."""
        fd = os.open(
            name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=self.dir_fd
        )
        with open(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return self.folder / name

    def environment(
        self, job: PythonJob, source: JobSource | None, context: Mapping[str, Any] | None = None
    ) -> dict[str, str]:
        """The ``PYTHON_EXEC_*`` variables of this run; for a handler job, its files are written.

        :param context: the handler's ``context`` (JSON values); default ``{"job_id": <jobId>}``.
        """
        env = {RESULT_FILE_ENV: str(self.result_file)}
        if source is None or job.function is None:
            return env
        params = self.write("parameters.json", json.dumps(job.function.parameters))
        ctx = self.write("context.json", json.dumps(dict(context or {"job_id": job.job_id}), default=str))
        self.write(self.bootstrap.name, BOOTSTRAP.read_text(encoding="utf-8"))
        env.update(
            {
                SOURCE_ROOT_ENV: str(source.root),
                HANDLER_ENV: job.function.handler,
                PARAMS_FILE_ENV: str(params),
                CONTEXT_FILE_ENV: str(ctx),
                ERROR_FILE_ENV: str(self.error_file),
            }
        )
        if source.main_file is not None:
            env[MAIN_FILE_ENV] = str(source.main_file)
        return env
