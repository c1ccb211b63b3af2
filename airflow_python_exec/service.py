"""``PythonExecutionService``: the platform's engine lifecycle, ``init`` / ``run`` / ``stop`` / ``close``.

``run`` loads the job, validates the interpreter (once per service), resolves a handler job's
source, provisions the job's environment when it has a lock file, requirements or PEP 723 metadata,
builds the command (the script, or the handler bootstrap), starts it in its own process group,
streams its merged output line by line, secrets already replaced by ``***``, and reads the run's
result (``PYTHON_EXEC_RESULT_FILE``, else the last line). It needs no running Airflow; the hook in
:mod:`airflow_python_exec.hooks` adapts it to the task log.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_python_exec.builder import Command, MacrosArg, PythonCommandBuilder
from airflow_python_exec.environments.interpreters import Interpreter
from airflow_python_exec.errors import PythonExecError, ResultError
from airflow_python_exec.handlers.data_items import AssetResolver, DataRun
from airflow_python_exec.handlers.results import read_handler_error, read_result
from airflow_python_exec.handlers.run_files import JobSource, RunFiles, resolve_job_source
from airflow_python_exec.isolation.job_files import open_folder, read_job_file
from airflow_python_exec.isolation.process import STOP_GRACE_S, JobProcess
from airflow_python_exec.isolation.sandbox import Sandbox, sandbox_for
from airflow_python_exec.logs import log, provider_line
from airflow_python_exec.models import PythonJob, declares_script_metadata
from airflow_python_exec.run_result import RunResult
from airflow_python_exec.settings import EngineSettings
from airflow_python_exec.validator import PythonEngineValidator

if TYPE_CHECKING:  # imported when a job needs an environment, to keep the CLI fast
    from airflow_python_exec.environments import EnvironmentProvisioner


class PythonExecutionService:
    """Run Python script jobs: ``init()``, then any number of ``run()``, then ``close()``.

    :param settings: engine settings; default: ``[python_exec]`` from Airflow's configuration.
    :param stop_grace_s: seconds between SIGTERM and SIGKILL when a run is stopped.
    """

    def __init__(self, settings: EngineSettings | None = None, *, stop_grace_s: float = STOP_GRACE_S) -> None:
        self._settings = settings
        self.stop_grace_s = stop_grace_s
        self._interpreter: Interpreter | None = None
        self._process: JobProcess | None = None
        self._provisioner: EnvironmentProvisioner | None = None
        self._stop_requested = False

    @property
    def settings(self) -> EngineSettings:
        """The settings in use (read from Airflow's configuration on first access if not given)."""
        if self._settings is None:
            self._settings = EngineSettings.from_airflow_config()
        return self._settings

    def init(self) -> Interpreter:
        """Validate the configured installation and return its interpreter.

        :raises PythonExecError: a subclass naming what is wrong (see :class:`PythonEngineValidator`).
        """
        self._interpreter = PythonEngineValidator(self.settings).validate()
        return self._interpreter

    def run(
        self,
        job: PythonJob | str | Path,
        *,
        macros: MacrosArg = None,
        dotenv_as_macros: bool = False,
        refresh: bool | None = None,
        cwd: str | Path | None = None,
        inherit_env: bool | None = None,
        context_env: Mapping[str, str] | None = None,
        on_line: Callable[[str], None] | None = None,
        on_secrets: Callable[[frozenset[str]], None] | None = None,
        on_setup_line: Callable[[str], None] | None = None,
        handler_context: Mapping[str, Any] | None = None,
        resolve_asset: AssetResolver | None = None,
    ) -> RunResult:
        """Run ``job`` to its end and return its :class:`RunResult`.

        :param job: a :class:`PythonJob`, or a path for :meth:`PythonJob.load`.
        :param macros: per-run macros, overriding ``job.json`` macros of the same key.
        :param dotenv_as_macros: convert the job's ``.env`` into environment variables.
        :param refresh: ``True`` builds an ephemeral environment for this run (default: the job's
            ``pythonEnv.refresh``).
        :param cwd: working directory (relative to the job folder); default the job folder.
        :param inherit_env: override ``[python_exec] inherit_env``.
        :param context_env: Airflow context variables (``AIRFLOW_CTX_*``).
        :param on_line: called with each output line, a ``str`` without newline, secrets replaced.
        :param on_secrets: called before the script starts with every text that gives a decrypted
            value away: the values and their forms (:func:`~airflow_python_exec.redaction.secret_forms`),
            for Airflow's ``mask_secret``.
        :param on_setup_line: called with each source and environment-provisioning line (prefixed
            ``[python_exec]`` or ``[uv]``); default: this module's logger.
        :param handler_context: a function job's ``context`` (JSON values); default ``{"job_id": ...}``.
        :param resolve_asset: an asset input's latest event (Airflow's); ``None``: asset inputs are refused.
        :raises PythonExecError: the job is refused before its script starts (exit status 2: among
            others ``SandboxUnavailableError`` for ``sandbox = bubblewrap`` without a usable bwrap), or
            its source or environment cannot be provisioned (``ProvisioningError``, exit status 3).
        """
        job = job if isinstance(job, PythonJob) else PythonJob.load(job)
        interpreter = self._interpreter or self.init()
        # Everything about the job is checked before anything is built (an environment can take
        # minutes): the macros, the .env, the working directory, the interpreter.
        prepared = PythonCommandBuilder(self.settings).prepare(
            job,
            macros=macros,
            dotenv_as_macros=dotenv_as_macros,
            inherit_env=inherit_env,
            context_env=context_env,
            cwd=cwd,
        )
        sandbox = sandbox_for(self.settings)  # a missing bwrap is refused before anything is built
        data = _data_run(job, self.settings, sandbox is not None, resolve_asset, handler_context)
        setup_line = on_setup_line or provider_line
        with ExitStack() as stack:
            if self._stop_requested:
                return self._stopped_before_start(job)
            source = resolve_job_source(job, self.settings, setup_line) if job.function is not None else None
            prepared.check_cwd(source.root if source is not None else None)
            script = _main_file(job, source)
            if data is not None and source is not None:
                data.read_handler_file(source.root, source.main_file)  # @handler outputs, project data items
            venv = self._environment(stack, job, interpreter, refresh, setup_line, script)
            python = venv / "bin" / "python" if venv is not None else interpreter.path
            files = stack.enter_context(RunFiles())
            run_env = files.environment(job, source, handler_context)
            if data is not None:
                run_env.update(data.stage(files.folder))
            command = prepared.command(
                python, venv, bootstrap=files.bootstrap if source is not None else None, run_env=run_env
            )
            if sandbox is not None:
                command = _sandboxed(command, sandbox, job, source, venv, python, files, data is not None)
            if on_secrets is not None and command.secrets:
                on_secrets(command.redact.forms)
            if self._stop_requested:
                return self._stopped_before_start(job)
            version = _venv_version(venv) if venv is not None else None
            result = self._execute(job, command, version or interpreter.version, on_line)
            result = self._with_result(result, files, command, source is not None)
            return self._published(result, data, files, command, setup_line)

    def _published(
        self, result: RunResult, data: DataRun | None, files: RunFiles, command: Command, on_line: Callable[[str], None]
    ) -> RunResult:
        """Publish a successful handler run's outputs (a failed or stopped run publishes nothing)."""
        if data is None or result.exit_code != 0 or result.stopped or result.result_error is not None:
            return result
        outputs = data.publish(
            files.folder,
            result.result,
            max_bytes=self.settings.max_result_bytes,
            max_output_bytes=self.settings.max_output_bytes,
            redact=command.redact,
            on_line=on_line,
        )
        return replace(result, result=data.result(result.result, outputs), outputs=outputs, inputs=data.lineage())

    def _with_result(self, result: RunResult, files: RunFiles, command: Command, handler: bool) -> RunResult:
        """Add the run's result (and a handler's failure) read from its files, secrets replaced."""
        if result.stopped:
            return result
        limit = self.settings.max_result_bytes
        error = (
            read_handler_error(files.error_file, command.redact, max_bytes=limit, dir_fd=files.dir_fd)
            if handler
            else None
        )
        try:
            value = read_result(
                files.result_file,
                result.last_line,
                max_result_bytes=limit,
                redact=command.redact,
                dir_fd=files.dir_fd,
            )
        except ResultError as exc:
            return replace(result, result_error=str(exc), handler_error=error)
        if error is not None and error.kind == "unreadable":  # a hostile error file fails even an exit 0
            return replace(result, result_error=error.message, handler_error=error)
        return replace(result, result=value, handler_error=error)

    @staticmethod
    def _stopped_before_start(job: PythonJob) -> RunResult:
        log.warning("job %s stopped before its script started", job.job_id)
        return RunResult(exit_code=128 + signal.SIGTERM, duration_s=0.0, last_line="", stopped=True)

    def _environment(
        self,
        stack: ExitStack,
        job: PythonJob,
        interpreter: Interpreter,
        refresh: bool | None,
        on_setup_line: Callable[[str], None] | None,
        script: Path | None = None,
    ) -> Path | None:
        """The job's virtual environment (entered on ``stack``), or ``None`` when it needs none."""
        if not job.needs_environment and (script is None or not declares_script_metadata(script)):
            return None
        from airflow_python_exec.environments import EnvironmentProvisioner

        provisioner = EnvironmentProvisioner(self.settings, on_line=on_setup_line)
        self._provisioner = provisioner
        try:
            return stack.enter_context(provisioner.environment(job, interpreter, refresh=refresh, script=script))
        finally:
            self._provisioner = None

    def _execute(
        self, job: PythonJob, command: Command, version: str, on_line: Callable[[str], None] | None
    ) -> RunResult:
        redact = command.redact
        log.info(
            "running job %s: %s (Python %s, cwd %s%s)",
            job.job_id,
            " ".join(command.argv),
            version,
            command.cwd,
            ", in a bubblewrap sandbox" if command.launcher else "",
        )
        started = time.monotonic()
        try:
            process = JobProcess(
                command.argv, command.env, command.cwd, grace_s=self.stop_grace_s, launcher=command.launcher
            )
        except OSError as exc:
            raise PythonExecError(
                f"job {job.job_id!r} could not start {command.argv[0]} ({exc.strerror or exc}); "
                "check the script, its interpreter and the working directory"
            ) from None
        self._process = process
        last = ""
        try:
            if self._stop_requested:  # stop() raced with the start
                process.stop()
            for last in process.stream(redact, hold=max(redact.longest - 1, 0)):
                if on_line is not None:
                    on_line(last)
            exit_code = process.wait()
        except BaseException as exc:
            process.kill()  # an interrupted reader (task timeout, Ctrl-C) must not leave the group
            log.info("job %s %s in %.2f s", job.job_id, _interruption(exc), time.monotonic() - started)
            raise
        finally:
            self._process = None
            process.close()
        result = RunResult(exit_code, time.monotonic() - started, last, stopped=process.stopped)
        log.info("job %s %s in %.2f s", job.job_id, _ending(result), result.duration_s)
        return result

    def stop(self) -> None:
        """Stop the current run: SIGTERM to the script's process group, SIGKILL after the grace period.

        Safe to call at any time, from another thread or a signal handler; a provisioning in progress
        is stopped too. Until :meth:`close`, a later ``run`` returns a stopped result without starting
        anything.
        """
        self._stop_requested = True
        for running in (self._provisioner, self._process):
            if running is not None:
                running.stop()

    def close(self) -> None:
        """Stop anything still running and release what ``init``/``run`` acquired."""
        self.stop()
        self._interpreter = None
        self._stop_requested = False


def _sandboxed(
    command: Command,
    sandbox: Sandbox,
    job: PythonJob,
    source: JobSource | None,
    venv: Path | None,
    python: Path,
    files: RunFiles,
    data_items: bool = False,
) -> Command:
    """``command`` started inside ``sandbox``: the job folder, working directory, environment,
    interpreter installation and handler source readable, the run's private folder writable (its
    staged inputs read-only)."""
    readable = [python.parent.parent, Path(os.path.realpath(python)).parent.parent]  # venv or prefix; base prefix
    if venv is not None:
        readable.append(venv)
    if source is not None:
        readable.append(source.root)
    if data_items:
        readable.append(DataRun.inputs_folder(files.folder))
    prefix = sandbox.prefix(job_folder=job.folder, cwd=command.cwd, readable=readable, writable=[files.folder])
    return replace(command, launcher=tuple(prefix))


def _data_run(
    job: PythonJob,
    settings: EngineSettings,
    sandboxed: bool,
    resolve_asset: AssetResolver | None,
    handler_context: Mapping[str, Any] | None,
) -> DataRun | None:
    """A function job's data items, its inputs resolved and checked (before anything is built)."""
    if job.function is None:
        return None
    hidden: list[str] = []
    if sandboxed:
        from airflow_python_exec.isolation.sandbox import hidden_paths

        hidden = hidden_paths(settings.cache_dir, job.folder)
    run_id = (handler_context or {}).get("run_id")
    data = DataRun(job, data_store=settings.data_store, resolve_asset=resolve_asset, run_id=run_id, hidden=hidden)
    data.check()
    return data


def _main_file(job: PythonJob, source: JobSource | None) -> Path | None:
    """The file read for PEP 723 metadata: a handler job's main file, or the script (``packageName``)."""
    if source is not None:
        return source.main_file
    return job.script if job.package_name is not None else None


def main_file(job: PythonJob, settings: EngineSettings, on_line: Callable[[str], None] | None = None) -> Path | None:
    """A job's main file, its source resolved first (``provision`` reads it for PEP 723 metadata).

    :raises PythonExecError: the source cannot be resolved.
    """
    source = resolve_job_source(job, settings, on_line or provider_line) if job.function is not None else None
    return _main_file(job, source)


def _ending(result: RunResult) -> str:
    """How a run ended, in words: ``exited with code 0``, ``stopped by SIGTERM (exit code 143)``."""
    if result.stopped and result.exit_code > 128:
        try:
            name = signal.Signals(result.exit_code - 128).name
        except ValueError:
            name = f"signal {result.exit_code - 128}"
        return f"stopped by {name} (exit code {result.exit_code})"
    if result.stopped:
        return f"stopped (exit code {result.exit_code})"
    return f"exited with code {result.exit_code}"


def _interruption(exc: BaseException) -> str:
    """How an interrupted run is described. The core does not import Airflow, so its task timeout
    (``AirflowTaskTimeout``, raised into the running task by ``execution_timeout``) is known by name."""
    if isinstance(exc, TimeoutError) or type(exc).__name__ == "AirflowTaskTimeout":
        return "timed out"
    if isinstance(exc, KeyboardInterrupt):
        return "stopped by SIGINT"
    return f"interrupted by {type(exc).__name__}"


def _venv_version(venv: Path) -> str | None:
    """The Python version of a virtual environment, from its ``pyvenv.cfg`` (``version_info``).

    Read as a job-writable file (an unsandboxed job can write a cached environment): never a FIFO,
    a symlink, or more than 64 KiB."""
    try:
        folder = open_folder(venv)
    except OSError:
        return None
    try:
        raw = read_job_file("pyvenv.cfg", dir_fd=folder, limit=65536, what="pyvenv.cfg", fix="rebuild it")
        text = raw.decode("utf-8", "replace") if raw is not None else ""
    except ResultError:
        return None
    finally:
        os.close(folder)
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() in ("version_info", "version"):
            return value.strip()
    return None
